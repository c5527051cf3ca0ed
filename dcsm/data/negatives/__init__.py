"""Rule-based hard-negative captions for free-form positive captions: ``parse`` (vocabulary, tokens,
noun phrases), ``rules`` (the five rewrite rules), ``sample`` (k negatives per caption, seeded)."""
