"""``python -m sb3_plasticity``: the main job (see :mod:`sb3_plasticity.demo`)."""

from sb3_plasticity.demo import main

if __name__ == "__main__":
    main()
