"""Modal dialogs and full-screen text views pushed over the main screen."""
