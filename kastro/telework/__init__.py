"""The telework role's controller side: who may reach what through the VPN."""
