from lodestar.cli import main

main()
