"""Command-line programs (each ``main(argv)``, run by :func:`dcsm.commands.runner.run_command`): ``train``,
``evaluate`` and the data preparation steps behind ``data_prep/*.py``."""
