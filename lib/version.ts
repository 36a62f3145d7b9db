/** The one place the version is defined. */
export const VERSION = "0.1.0";
