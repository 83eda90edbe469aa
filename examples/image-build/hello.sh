#!/bin/sh
echo "hello from image-build @VERSION@, running as $(id -un)"
