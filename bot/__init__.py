"""Ward Watch: keeps the relatives of hospital patients informed."""
