"""What the platform's services share: settings declared once and the object store."""
