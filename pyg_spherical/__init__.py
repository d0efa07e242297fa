"""pyg_spherical."""
