"""``python -m codec``: the ``codec`` command line."""

try:
    from codec.cli.main import run
except ModuleNotFoundError as error:
    if error.name != "codec.cli":
        raise
    # run from a source checkout's root with the package installed (not editable) elsewhere: this
    # checkout's codec/ comes first on sys.path, and its cli/ becomes codec.cli only when installed
    from cli.main import run

if __name__ == "__main__":
    run()
