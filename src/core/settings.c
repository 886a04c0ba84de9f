/* settings: the names of the configuration's enum values. */
#include "core/settings.h"

#include <string.h>

const char *const dmlp_activation_names[] = {"sigmoid", "tanh", "relu", "leaky_relu",
                                             "linear", "softmax", NULL};
const char *const dmlp_init_names[] = {"he", "xavier", NULL};
const char *const dmlp_loss_names[] = {"cross_entropy", "mse", "mae", "huber", NULL};
const char *const dmlp_optimizer_names[] = {"sgd", "adam", "adamw", "lbfgs", NULL};
const char *const dmlp_placement_names[] = {"replicated", "sharded", "streamed", NULL};
const char *const dmlp_schedule_names[] = {"constant", "step", "cosine", "plateau", NULL};
const char *const dmlp_lr_scaling_names[] = {"none", "linear", NULL};
const char *const dmlp_normalize_names[] = {"none", "standard", NULL};
const char *const dmlp_metric_names[] = {"val_loss", "val_accuracy", NULL};
const char *const dmlp_plateau_metric_names[] = {"val_loss", "train_loss", NULL};
const char *const dmlp_class_weight_words[] = {"balanced", NULL};

const char *dmlp_name_of(const char *const *names, int v)
{
    for (int i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return "unknown";
}

const char *dmlp_activation_name(enum dmlp_activation a)
{
    return dmlp_name_of(dmlp_activation_names, (int)a);
}

const char *dmlp_loss_name(enum dmlp_loss l) { return dmlp_name_of(dmlp_loss_names, (int)l); }

const char *dmlp_optimizer_name(enum dmlp_optimizer o)
{
    return dmlp_name_of(dmlp_optimizer_names, (int)o);
}

int dmlp_activation_parse(const char *name, enum dmlp_activation *out)
{
    for (int i = 0; name && dmlp_activation_names[i]; i++) {
        if (strcmp(name, dmlp_activation_names[i]) == 0) {
            *out = (enum dmlp_activation)i;
            return 0;
        }
    }
    return -1;
}
