UPDATE queuetopia_periodic SET last_tick = %(tick)s WHERE scope = %(scope)s AND name = %(name)s
