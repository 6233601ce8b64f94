"""``python -m bucketrnn``: the experiment app (:mod:`bucketrnn.app.run`)."""

from bucketrnn.app.run import main

__all__: list = []

if __name__ == "__main__":
    main()
