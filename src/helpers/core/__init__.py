"""The book's machinery, with no model in it: profiles, results and verdicts, the cache, the command
line, the paper's numbers, the scoreboard and the smoke regression."""
