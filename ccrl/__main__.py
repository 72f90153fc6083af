"""``python -m ccrl``: the same as the ``ccrl`` console script."""

from ccrl.cli import main

if __name__ == "__main__":
    main()
