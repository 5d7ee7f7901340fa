"""The course: validating, releasing and self-testing the labs, and checking what their text claims."""
