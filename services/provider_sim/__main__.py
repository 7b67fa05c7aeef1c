from services.provider_sim.main import run

run()
