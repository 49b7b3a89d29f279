"""``python -m codec``: the ``codec`` command line."""

from codec.cli.main import run

if __name__ == "__main__":
    run()
