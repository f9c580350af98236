"""The ``unmask`` console entry point: the command line imported with Ctrl-C held (``maskgen.launch``)."""

from maskgen.launch import launch


def main() -> None:
    launch("unmask.cli")
