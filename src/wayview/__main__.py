"""wayview.__main__: `python -m wayview` runs the CLI."""

from wayview.cli import cli

if __name__ == "__main__":
    cli()
