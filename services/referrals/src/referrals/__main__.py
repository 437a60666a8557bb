from referrals.app import main

main()
