"""Public API of this subpackage; see its modules."""
