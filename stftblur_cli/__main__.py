"""``python -m stftblur_cli`` is the ``stftblur`` command."""

from stftblur_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="stftblur")
