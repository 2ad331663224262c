"""What the platform's services share: settings declared once, object store, submission checks."""
