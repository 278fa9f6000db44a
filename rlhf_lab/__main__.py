"""`python -m rlhf_lab <stage>`: the course's stages from the command line (see cli.py)."""
from rlhf_lab.cli import main

main()
