# attack: allocate memory until something breaks
blocks = []
while True:
    blocks.append(bytearray(64 << 20))
