# attack: an int subclass whose __eq__ always says yes (survives naive type checks)
class Liar(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def has_close_elements(numbers, threshold):
    return Liar(0)
