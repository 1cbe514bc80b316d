"""Pure decisions, no I/O: when to retrain, whether a challenger replaces the champion, what a backfill does."""
