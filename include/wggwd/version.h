// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#ifndef WGGWD_VERSION_H
#define WGGWD_VERSION_H

#define WGGWD_VERSION "0.1.0"

#endif
