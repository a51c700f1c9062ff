# attack: never return
def has_close_elements(numbers, threshold):
    while True:
        pass
