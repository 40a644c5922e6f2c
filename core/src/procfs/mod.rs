//! /proc parsers
