"""Report writers: pure functions of rows into the markdown leaderboard and the study report."""
