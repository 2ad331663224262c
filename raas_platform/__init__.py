"""What the platform's services share: settings declared once, the object store, and the dev stack
(``raas stack``) that runs the whole platform on one machine."""
