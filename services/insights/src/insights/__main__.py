from insights.app import main

main()
