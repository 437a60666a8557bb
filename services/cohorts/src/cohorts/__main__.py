from cohorts.app import main

main()
