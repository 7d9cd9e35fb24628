"""``python -m al4dstem`` runs the command line."""

from al4dstem.cli import main

main()
