from services.dispatcher.main import run

run()
