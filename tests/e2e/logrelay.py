"""A ProxyCommand relay that first writes down the address ssh was asked to reach (`%h`).

usage: python logrelay.py ADDRESS LOGFILE HOST PORT
The spot test uses it to see which address the tunnel's reconnect dialled: the instance's new
public IP after AWS restarted it, not the one it had before.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    address, log, host, port = sys.argv[1:5]
    with open(log, "a") as fh:
        fh.write(address + "\n")
    sys.argv = [sys.argv[0], host, port]
    runpy.run_path(str(Path(__file__).with_name("relay.py")), run_name="__main__")
