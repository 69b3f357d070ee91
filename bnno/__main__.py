"""Allows ``python -m bnno``."""

from bnno.cli import main

if __name__ == "__main__":
    main()
