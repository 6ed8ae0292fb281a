"""The Ethereum wallet: deposit addresses, the deposit watcher, the sweep and the withdrawal
sender (docs/wallet.md). The functions in functions/{wallet,watcher,sweep,sender} are thin
shells around these modules."""
