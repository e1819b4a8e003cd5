# One-word entry points. Each target installs what it needs first (tools/install.sh is idempotent).
.PHONY: install serve demo test test-fast lint bench clean

MEDIA ?= $(CURDIR)/media
VENV := .venv/bin
TEST_APT_PACKAGES := ffmpeg strace docker-compose chromium

install:
	tools/install.sh

serve: install  ## index and search your own videos: make serve MEDIA=~/Videos
	CLIPSEEK_MEDIA_ROOTS=$${CLIPSEEK_MEDIA_ROOTS:-$(MEDIA)} $(VENV)/clipseek serve

demo: install  ## the offline demo: demo videos, demo model, index, searches
	$(VENV)/python tools/demo.py

test:  ## the whole suite, as CI runs it (installs the test tools too: chromium, strace, docker-compose)
	APT_PACKAGES="$(TEST_APT_PACKAGES)" tools/install.sh
	$(VENV)/python -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/ruff check clipseek services tests tools web bench

bench: install
	$(VENV)/python bench/run.py

clean:
	rm -rf .venv workspace demo-videos .pytest_cache
