"""`python -m dlenv` runs the same CLI as the `dlenv` console script."""

from dlenv.cli import main

if __name__ == "__main__":
    main()
