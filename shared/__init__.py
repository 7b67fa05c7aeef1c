"""What more than one service needs: message contracts, topology, settings, segment
counting, the error catalogue. Nothing here imports a service."""
