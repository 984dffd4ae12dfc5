"""Small widgets of the wizard: each draws one thing and holds no domain logic."""
