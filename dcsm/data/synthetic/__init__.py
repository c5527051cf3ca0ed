"""Seeded synthetic scenes (MCQ with hard negatives) and captioned scenes for pretraining."""
