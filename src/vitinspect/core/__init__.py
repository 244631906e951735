"""What every layer uses: errors, atomic storage, how a stage or command runs, bounded text in messages."""
