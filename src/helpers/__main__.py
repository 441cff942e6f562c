from helpers.core.cli import main

main()
