/* Printing a moelat_report as a table or as JSON (jansson). */
#ifndef MOELAT_REPORT_PRINT_H
#define MOELAT_REPORT_PRINT_H

#include <jansson.h>
#include <stdio.h>

#include "moelat/moelat.h"

json_t *report_to_json(const moelat_report *r);
void report_print_table(FILE *out, const moelat_report *r);

#endif
