<?php
// The prototype's preload when --prototype is given without --preload:
// nothing beyond PHP's own start-up (the workers still start by fork, and
// share the prototype's memory and opcache).
