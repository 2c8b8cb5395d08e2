/*
 * replay_main: runs a fuzz target over the files named on its command line, without libFuzzer.
 * `make test` links each target with this and with the objects of the binary under test (the
 * normal build, or the sanitizer build under SANITIZE=1), so replaying the corpora needs neither
 * clang nor a second compilation of the runtime. As under libFuzzer, each input is handed over in
 * a buffer of exactly its size, and a broken property aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The whole file in a buffer of exactly its size (one byte for an empty file); NULL on error. */
static uint8_t *read_input(const char *path, size_t *size)
{
	FILE *file = fopen(path, "rb");
	if (!file)
		return NULL;
	uint8_t *data = NULL;
	long length = -1;
	if (fseek(file, 0, SEEK_END) == 0 && (length = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0)
		data = malloc(length > 0 ? (size_t)length : 1);
	if (data && length > 0 && fread(data, 1, (size_t)length, file) != (size_t)length) {
		free(data);
		data = NULL;
	}
	fclose(file);
	*size = length > 0 ? (size_t)length : 0;
	return data;
}

int main(int argc, char **argv)
{
	LLVMFuzzerInitialize(&argc, &argv);
	int replayed = 0;
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue; /* libFuzzer options, accepted so that the same command lines work */
		size_t size;
		uint8_t *data = read_input(argv[i], &size);
		if (!data) {
			fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[i]);
			return 2;
		}
		LLVMFuzzerTestOneInput(data, size);
		free(data);
		replayed++;
	}
	printf("%s: %d inputs replayed, every property held\n", argv[0], replayed);
	return 0;
}
