package main

import "unsafe"

var empty = []byte{0}

// unsafeEmpty points at an empty C string (module parameters).
func unsafeEmpty() unsafe.Pointer { return unsafe.Pointer(&empty[0]) }

func unsafePtr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
