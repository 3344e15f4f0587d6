from tinyboard.cli import main

main()
