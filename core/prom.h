// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#ifndef WGGWD_PROM_H
#define WGGWD_PROM_H

#include <stdio.h>

/* Every metric family, as Prometheus' text format 0.0.4. */
void prom_write(FILE *f);
/* CLOCK_MONOTONIC seconds when the daemon started (http.c sets it). */
extern double prom_started_mono;

#endif
