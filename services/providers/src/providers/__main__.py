from providers.app import main

main()
