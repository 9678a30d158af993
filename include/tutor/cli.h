/* cli.h: the subcommands of the `tutor` program, one source file each in src/cli/.
 * Each takes the arguments after its name and returns the process exit status. */
#ifndef TUTOR_CLI_H
#define TUTOR_CLI_H

int cmd_tokenizer(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
